"""Layer 8 (with ``cli``): reports that read trained runs, e.g. the robustness report behind ``linf-opt certify``."""
from linf_opt.reports.plots import (accuracy_curves, plot_accuracy_vs_eps, plot_boxes, plot_fit, plot_lipschitz,
                                    plot_matrix_rows, plot_residual_traces, plot_training_curves, plot_volumes)

__all__ = ["accuracy_curves", "plot_accuracy_vs_eps", "plot_boxes", "plot_fit", "plot_lipschitz", "plot_matrix_rows",
           "plot_residual_traces", "plot_training_curves", "plot_volumes"]
