"""Links from the dashboard to a deal's record in its CRM: the `links` capability
(connectors.base.RecordLinks) through the registry, and the sandbox's page at that address."""

import httpx
import pytest

from connectors import registry
from connectors.sandbox import generate_company
from connectors.zoho.sandbox import SANDBOX
from connectors.zoho.sandbox import create_app as zoho_app


@pytest.mark.parametrize("config,url", [
    ({"org": "org60012345"}, "https://crm.zoho.com/crm/org60012345/tab/Potentials/4800000001"),
    ({"dc": "eu", "org": "org7"}, "https://crm.zoho.eu/crm/org7/tab/Potentials/4800000001"),
    ({"dc": "us"}, "https://crm.zoho.com/crm/tab/Potentials/4800000001"),  # default org
    ({"dc": "ca", "org": "org1"}, "https://crm.zohocloud.ca/crm/org1/tab/Potentials/4800000001"),
    ({"dc": "com.cn"}, "https://crm.zoho.com.cn/crm/tab/Potentials/4800000001"),
    ({"accounts_url": "http://127.0.0.1:8400/", "org": "org9"},
     "http://127.0.0.1:8400/crm/org9/tab/Potentials/4800000001"),  # a sandbox or a proxy
])
def test_zoho_links_a_deal_to_its_page_in_the_web_app(config, url):
    assert "links" in registry.capabilities("zoho")
    assert registry.deal_url("zoho", config, "4800000001") == url


def test_no_link_without_the_capability_or_with_a_config_the_model_refuses():
    assert "links" not in registry.capabilities("fxiaoke")  # no documented record page
    assert registry.deal_url("fxiaoke", {}, "64f0c0ffee") is None
    assert registry.deal_url("nosuchcrm", {}, "1") is None
    assert registry.deal_url("zoho", {"org": "org 1/../x"}, "1") is None
    assert registry.deal_url("zoho", {"dc": "mars"}, "1") is None
    # a remote id is one path segment, whatever it holds
    assert registry.deal_url("zoho", {}, "1/../2?x") == (
        "https://crm.zoho.com/crm/tab/Potentials/1%2F..%2F2%3Fx")


def test_a_capability_declared_with_a_non_method_is_refused():
    class Broken:
        name = "broken"
        config_model = SANDBOX.__class__  # not a model: also reported
        secrets_model = config_model
        max_in_flight = 1
        deal_url = "https://example.com"

        def check(self) -> None: ...
        def read(self) -> None: ...
        api_calls = 0

    with pytest.raises(registry.InvalidConnector, match="deal_url must be a method"):
        registry.check_connector("broken", Broken)


async def test_the_sandbox_serves_the_page_the_link_names():
    company = generate_company(seed=3, deals=40)
    app = zoho_app(company)
    deal = next(iter(company.deals.values()))
    url = registry.deal_url("zoho", SANDBOX.config("http://sandbox.test"), deal.id)
    assert url is not None and url.startswith("http://sandbox.test/crm/org")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sandbox.test") as client:
        page = await client.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f"<h1>{deal.name}</h1>" in page.text.replace("&amp;", "&")
        assert (await client.get(url.replace("/crm/org", "/crm/orgX"))).status_code == 404
        gone = url.rsplit("/", 1)[0] + "/999"
        assert (await client.get(gone)).status_code == 404
        default_org = url.replace(url.split("/")[4] + "/", "")  # /crm/tab/Potentials/<id>
        assert (await client.get(default_org)).status_code == 200
