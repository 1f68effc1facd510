"""Layer 5: where ε lives (input spaces), ℓ∞ attacks, certificates and the certified-robust loss."""
from linf_opt.robustness.input_space import InputSpace
from linf_opt.robustness.attacks import attack_accuracy, fgsm, pgd
from linf_opt.robustness.certify import CertifyResult, ReachableBox, certify, reachable_box
from linf_opt.robustness.robust_training import robust_loss, robust_schedule

__all__ = ["InputSpace", "attack_accuracy", "fgsm", "pgd", "CertifyResult", "ReachableBox", "certify",
           "reachable_box", "robust_loss", "robust_schedule"]
