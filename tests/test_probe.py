"""The probe runs end to end at a tiny size and reports every figure it promises."""
import pytest

from tests import probe


@pytest.mark.slow
def test_the_probe_reports_tries_tracebacks_lost_revisions_and_peak_memory(capsys):
    figures = probe.main(["--sessions", "2", "--span", "8", "--candidates", "2", "--doc-tokens", "300",
                          "--kills", "1", "--cli-flag-tries", "0", "--cli-lines", "3", "--abandoned", "4"])
    page, cli = figures["page_bad_input"], figures["cli_bad_input"]
    assert page["tries"] == len(probe.PAGE_BAD) and 0 <= page["tracebacks"] <= page["tries"]
    assert cli["tries"] == 3 and 0 <= cli["tracebacks"] <= cli["tries"]
    kill = figures["kill_mid_save"]
    assert kill["rounds"] == 1 and kill["saves"] >= 1 and kill["lost_revisions"] >= 0
    sessions = figures["sessions"]
    assert sessions["sessions"] == 2 and sessions["peak_rss_mb"] >= sessions["rss_held_mb"] > 0
    service = figures["service_bad_input"]
    assert service["tries"] == len(probe.service_requests()) == service["clean_refusals"]  # issue 20: all refused
    assert service["errors_500"] == service["plain_text_500"] == service["hangs"] == service["kills"] == 0
    assert service["deadline_said"] == 1 and service["held_past_deadline"] == 0
    assert service["peak_rss_mb"] >= service["rss_after_mb"] > 0
    printed = capsys.readouterr().out
    assert "tracebacks=" in printed and "lost_revisions=" in printed and "peak_rss_mb=" in printed
    assert "clean_refusals=" in printed and "kills=" in printed
