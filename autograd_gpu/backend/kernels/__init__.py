"""The backend's fused CUDA kernels, one module per kernel family (``loader`` declares what a
family is and compiles it; ``multi_tensor`` holds the launch helpers of the kernels over lists
of tensors). Each family module starts with its declaration: the source in
``autograd_gpu/kernels/<source>.cu``, its entry points and dtypes, the NumPy reference of each
entry, its self-check and the ops that reach it. The optimizers', AMP's and clipping's families
live with them (optim/kernels.py, amp.py, clipping.py).

CupyBackend calls the entries where a kernel applies (backend/cupy_fused.py for the fused
operations, backend/cupy_backend.py for casts, small arrays, relu and the bias add, scatter);
ops reach them only through backend methods."""

__all__: list = []
