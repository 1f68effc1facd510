"""Layer 6: training problems (strict dataclass configs from TOML), atomic checkpoints and the
projected-gradient trainer."""
from linf_opt.training.config import Problem, load_problem, problem_to_dict
from linf_opt.training.trainer import (NonFiniteLossError, Trainer, TrainResult, evaluate, format_epoch, load_run,
                                       train)

__all__ = ["Problem", "load_problem", "problem_to_dict", "NonFiniteLossError", "Trainer", "TrainResult", "evaluate",
           "load_run", "train", "format_epoch"]
