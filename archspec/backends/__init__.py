"""The backends: a live torch.nn.Module (with weights loading and state_dict comparison), and
standalone PyTorch source."""
