import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import torch

# The tests solve many small problems: one thread is fastest and keeps results reproducible, and the
# machine (2 cores) is often shared with other work.
torch.set_num_threads(1)
