"""Whole-suite setup: nothing a test starts may reach the network (app.main sets the same)."""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
