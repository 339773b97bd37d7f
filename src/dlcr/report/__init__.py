"""HTML reports: of a demo folder (:func:`build_demo_report`), and of any folder dlcr writes — demo,
generation work folder or training run — found by its contents (:func:`build_report`)."""

from dlcr.report.folders import build_report, folder_kind
from dlcr.report.html import Report, build_demo_report

__all__ = ["Report", "build_demo_report", "build_report", "folder_kind"]
