"""The app starts, the login page renders, and a position can be stored."""

from portal.ledger.models import Position


def test_login_page_renders(client):
    response = client.get("/officer/login")
    assert response.status_code == 200
    assert "Accesso al back office" in response.get_data(as_text=True)


def test_position_is_created_with_numbers(make_position):
    position = make_position(installments=(5000, 5000))
    assert isinstance(position, Position)
    assert [o.kind for o in position.options] == ["single", "installment", "installment"]
    assert len({o.notice_number for o in position.options}) == 3
