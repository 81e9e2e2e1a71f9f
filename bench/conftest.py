import os

os.environ.setdefault("AUTOGRAD_GPU_DEVICE", "cpu")
