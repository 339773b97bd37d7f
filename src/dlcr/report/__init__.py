"""The HTML report of a demo folder (:func:`build_demo_report`) and the figures it is made of."""

from dlcr.report.html import build_demo_report

__all__ = ["build_demo_report"]
