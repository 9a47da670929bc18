from textual.widgets import Static

from dsd_tui.app import DsdApp


async def test_app_starts_shows_home_and_quits():
    app = DsdApp()
    async with app.run_test(size=(80, 24)) as pilot:
        text = str(app.query_one("#welcome", Static).render())
        assert "dsd-tui" in text and "dsd train" in text
        await pilot.press("q")
    assert app.return_code == 0
