"""Ids in URLs and query strings beyond what the database holds (issue 10, item 6): a 404 or a filter message.

Shared with :mod:`tests.test_sqlite`, which runs the same checks on SQLite.
"""

import re

HUGE = str(2**63)  # one past the largest BIGINT / SQLite INTEGER
PAST_INT32 = str(2**31)  # one past a 32-bit INTEGER key on PostgreSQL (bill runs, users, services, ...)
HUGER = "9" * 40
#: Unicode digits that str.isdigit() accepts and int() refuses (a superscript two).
NOT_ASCII = "²"

ID_URLS = (
    "/officer/positions/{}",
    "/officer/positions/{}/notice.pdf",
    "/officer/billruns/{}",
    "/officer/billruns/{}/package.zip",
    "/officer/settings/services/{}",
    "/officer/settings/accounts/{}",
    "/officer/settings/users/{}",
    "/officer/settings/users/{}/password",
    "/officer/positions/{}/edit",
)
POST_URLS = (
    "/officer/positions/{}/cancel",
    "/officer/positions/{}/notice/email",
    "/officer/billruns/{}/cancel",
    "/officer/billruns/{}/restart",
    "/officer/settings/accounts/{}/delete",
    "/officer/settings/api/{}/revoke",
    "/officer/positions/{}/abate",
)


def check_ids_out_of_range(client, position_id: int) -> None:
    """Every id route answers 404 to ids past int64; list filters report them; nothing is a 500."""
    for value in (HUGE, HUGER, PAST_INT32, "0"):
        for url in ID_URLS:
            response = client.get(url.format(value))
            assert response.status_code == 404, (url, value, response.status_code)
        for url in POST_URLS:
            response = client.post(url.format(value), data={"reason": "prova"})
            assert response.status_code == 404, (url, value, response.status_code)
    assert client.get(f"/officer/positions/{position_id}").status_code == 200

    for value in (HUGE, HUGER, NOT_ASCII, "-1", "abc"):
        response = client.get(f"/officer/positions?service_id={value}")
        html = response.get_data(as_text=True)
        assert response.status_code == 200, (value, response.status_code)
        error = re.search(r'id="f-service_id-error">([^<]*)<', html)
        assert error, value
        assert "Servizio non valido" in error.group(1), value
        assert f'href="/officer/positions/{position_id}"' in html  # the other filters (none) still apply
        export = client.get(f"/officer/positions/export?format=csv&service_id={value}")
        assert export.status_code == 200, (value, export.status_code)
        export.get_data()  # the streamed CSV, to its end

    for value in (HUGE, HUGER, NOT_ASCII):
        # A cursor past every id is the first page; one that cannot be read is ignored.
        response = client.get(f"/officer/positions?after={value}&shown={value}", headers={"HX-Request": "true"})
        assert response.status_code == 200, (value, response.status_code)
        assert f'href="/officer/positions/{position_id}"' in response.get_data(as_text=True)
        assert client.get(f"/officer/billruns/new?service_id={value}").status_code == 200
