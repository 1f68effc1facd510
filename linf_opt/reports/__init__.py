"""Layer 8 (with ``cli``): reports that read trained runs, e.g. the robustness report behind ``linf-opt certify``."""
