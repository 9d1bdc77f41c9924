"""`python app.py`'s terminal: Gradio's per-page-load lines are dropped, everything else passes."""
import io

from page.quiet import WithoutNoise


def test_the_component_file_lines_are_dropped_and_other_lines_pass_whole():
    out = io.StringIO()
    stream = WithoutNoise(out)
    stream.write("id=3fa9c0, environment=client, type=component, file_name=index.js\nkept one\nhalf ")
    stream.write("a line\nid=3fa9c0, environment=client, type=component, file_name=style.css\n")
    assert out.getvalue() == "kept one\nhalf a line\n"
