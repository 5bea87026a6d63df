"""Temperature studies: sweeps over (loss × policy × τ), tables in Wang & Liu's layout, figures
(uniformity–tolerance plane, accuracy against τ, gradient weight over negatives, similarity
histograms, training curves) and a self-contained HTML report.

Modules: :mod:`~contrastlab.analysis.sweep` (grid, resumable runs), :mod:`~.tables`,
:mod:`~.profiles` (numbers from saved projections), :mod:`~.figures`, :mod:`~.figure_sets`,
:mod:`~.report`, :mod:`~.cli` (the ``sweep`` and ``report`` subcommands).
"""
