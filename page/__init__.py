"""The page: Gradio Blocks (demo), what its buttons mean (actions), and its HTML (views)."""
