"""``flask collections interest``: the engine's interest from the legal-rate table the migration seeded."""

import pytest


@pytest.mark.parametrize(("args", "total"), [([], "22,20 €"), (["--spread", "1"], "30,93 €"),
                                             (["--divisor", "leap"], "22,18 €")])
def test_interest_command_prints_the_digest_figures(app, legal_rates, args, total):
    result = app.test_cli_runner().invoke(args=["collections", "interest", "250,00", "2023-05-31", "2026-11-25",
                                                *args])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == f"Totale: 1274 giorni, interessi {total}".replace(" €", "\xa0€")
    assert "214 gg" in result.output


def test_interest_command_refuses_a_spread_beyond_three_points(app, legal_rates):
    result = app.test_cli_runner().invoke(args=["collections", "interest", "250", "2023-05-31", "2026-11-25",
                                                "--spread", "4"])
    assert result.exit_code != 0
    assert "-3 e +3" in result.output
