"""engine.tools.blind: the reader-free defect check, and counting a blind reader's answers."""
import json

from engine.tools.blind import prose_defect, score, write_sheet


def test_prose_defects_see_doubles_loops_and_the_words_at_the_edges():
    assert prose_defect("The difference ", "between the two is that", " that only")  # across the edge
    assert prose_defect("", "The code is a of the code of the code", "")
    assert prose_defect("it ", "was\nbuilt", " here")
    assert not prose_defect("The difference ", "between the two is", " that only")


def test_the_sheet_hides_the_configurations_and_the_score_counts_by_them(tmp_path):
    text = "One two three four five."
    result = {"edits": [{"kind": "prose", "text": text, "start": 4, "end": 13, "new": {"x": "six", "y": "seven"}}],
              "measures": {"x": {}, "y": {}}}
    write_sheet(result, tmp_path, seed=1)
    sheet = (tmp_path / "sheet.md").read_text()
    assert "«six»" in sheet and "«seven»" in sheet and '"x"' not in sheet and " x" not in sheet.split("Original")[1]
    key = json.loads((tmp_path / "key.json").read_text())["1"]
    kept_x = next(label for label, name in key.items() if name == "x")
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"1": {kept_x: True}}))
    assert score(tmp_path, answers) == {"x": {"prose": "1/1"}, "y": {"prose": "0/1"}}
