"""The registered kinds, activations and merges by name: filled by `registry.register`, read by
every stage that dispatches on a kind (and by the field types that name an activation or merge)."""

KINDS: dict = {}  # name -> LayerKind, BlockKind or Structure
ACTIVATIONS: dict = {}  # name -> Activation
MERGES: dict = {}  # name -> Merge
