"""Unit-test set-up: a non-interactive matplotlib backend (kernels started by nbval keep inline)."""

import matplotlib

matplotlib.use("Agg")
