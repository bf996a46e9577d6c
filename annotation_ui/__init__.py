"""The annotation app: store (database), assignment, agreement, import/export, Gradio UI."""
