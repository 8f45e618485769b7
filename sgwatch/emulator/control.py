"""A small client for the emulator's control API (``/_emulator/...``), for tests and scripts.

It talks to the emulator over plain HTTP with proxies disabled: the control API sits on
loopback and an inherited HTTP_PROXY would otherwise swallow the request.

Routes, each taking ``?account=NAME`` (default ``default``): ``GET|DELETE stats``,
``GET|PUT faults``, ``PUT|DELETE groups/{region}/{sg}``, ``GET|POST
groups/{region}/{sg}/permissions``, ``DELETE groups/{region}/{sg}/permissions/{rule_id}`` and
``GET|PUT|DELETE prefix-lists/{region}/{pl}`` (PUT takes the DescribePrefixListAttributes
fields, ``{"PrefixListName": ..., "Entries": {"Entry": [{"Cidr": ..., "Description": ...}]}}``,
and replaces the whole list) and ``GET|PUT|DELETE port-range-lists/{region}/{prl}`` (PUT takes
``{"Entries": [{"PortRange": "80/80", "Description": ...}]}``, a plain array as
DescribePortRangeListEntries answers, optionally with a ``PortRangeListName``, and replaces the
whole list; PUT and GET answer ``{"PortRangeListId": ..., "PortRangeListName": ..., "Entries": [...]}``).
Membership: ``GET|PUT|DELETE interfaces/{region}/{eni}`` (a NetworkInterfaceSet entry),
``PUT|DELETE interfaces/{region}/{eni}/groups/{sg}`` (join, leave), ``PUT|DELETE
interfaces/{region}/{eni}/eip`` (associate ``{"PublicIpAddress": ..., "PrivateIpAddress"?: ...}``,
release) and ``GET|PUT|DELETE instances/{region}/{id}`` (an Instance entry of DescribeInstances).

ActionTrail: every change above records the event of the API call it stands for
(``sgwatch.emulator.actiontrail``), made by the identity the query names (``user``,
``identity_type``, ``source_ip``, ``user_agent``, ``access_key_id``; :meth:`EmulatorControl.as_identity`);
``GET|DELETE actiontrail/events`` reads (visible to LookupEvents or not yet) or forgets them.
The faults ``actiontrail_delay_seconds`` and ``actiontrail_qps`` set LookupEvents' delay and limit.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from sgwatch.sources.raw import DEFAULT_ACCOUNT


class ControlError(RuntimeError):
    pass


class EmulatorControl:
    def __init__(self, base_url: str, timeout: float = 10.0, identity: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.identity = dict(identity or {})
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def as_identity(
        self,
        user: str = "",
        *,
        source_ip: str = "",
        user_agent: str = "",
        identity_type: str = "",
        access_key_id: str = "",
    ) -> EmulatorControl:
        """A client whose changes ActionTrail records as made by this identity (unnamed parts: test defaults)."""
        named = {
            "user": user,
            "source_ip": source_ip,
            "user_agent": user_agent,
            "identity_type": identity_type,
            "access_key_id": access_key_id,
        }
        return EmulatorControl(self.base_url, self.timeout, {k: v for k, v in named.items() if v})

    def _call(self, method: str, path: str, body: Any = None, account: str = DEFAULT_ACCOUNT, **extra: str) -> Any:
        url = f"{self.base_url}/_emulator/{path}"
        query = {**({"account": account} if account != DEFAULT_ACCOUNT else {}), **self.identity, **extra}
        if query:
            url += "?" + urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from exc

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def reset_stats(self) -> None:
        self._call("DELETE", "stats")

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "faults")
        return result

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", "faults", changes)
        return result

    def trail_events(self, account: str | None = None) -> list[dict[str, Any]]:
        """The ActionTrail records of the changes made so far (oldest first), as LookupEvents and
        EventBridge (a CloudEvent's ``data``) carry them; ``account``: only that account's."""
        only = {"of_account": account} if account is not None else {}
        result: list[dict[str, Any]] = self._call("GET", "actiontrail/events", **only)
        return result

    def clear_trail_events(self) -> None:
        self._call("DELETE", "actiontrail/events")

    def add_group(
        self, region: str, group_id: str, listing: dict[str, Any] | None = None, account: str = DEFAULT_ACCOUNT
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"groups/{region}/{group_id}", listing or {}, account)
        return result

    def remove_group(self, region: str, group_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._call("DELETE", f"groups/{region}/{group_id}", account=account)

    def permissions(self, region: str, group_id: str, account: str = DEFAULT_ACCOUNT) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"groups/{region}/{group_id}/permissions", account=account)
        return result

    def add_permission(
        self, region: str, group_id: str, permission: dict[str, Any], account: str = DEFAULT_ACCOUNT
    ) -> dict[str, Any]:
        """Add a rule; missing fields become "" and a rule id is assigned. Returns the stored rule."""
        result: dict[str, Any] = self._call("POST", f"groups/{region}/{group_id}/permissions", permission, account)
        return result

    def remove_permission(self, region: str, group_id: str, rule_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._call("DELETE", f"groups/{region}/{group_id}/permissions/{rule_id}", account=account)

    def put_prefix_list(
        self,
        region: str,
        prefix_list_id: str,
        attributes: dict[str, Any] | None = None,
        account: str = DEFAULT_ACCOUNT,
    ) -> dict[str, Any]:
        """Create or wholly replace a prefix list; returns it as DescribePrefixListAttributes answers.

        ``attributes`` holds the API's fields: ``PrefixListName``, ``AddressFamily``,
        ``MaxEntries``, ``Description``, ``CreationTime`` and ``Entries`` as
        ``{"Entry": [{"Cidr": ..., "Description": ...}]}``; absent ones take defaults.
        """
        result: dict[str, Any] = self._call("PUT", f"prefix-lists/{region}/{prefix_list_id}", attributes or {}, account)
        return result

    def prefix_list(self, region: str, prefix_list_id: str, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"prefix-lists/{region}/{prefix_list_id}", account=account)
        return result

    def remove_prefix_list(self, region: str, prefix_list_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._call("DELETE", f"prefix-lists/{region}/{prefix_list_id}", account=account)

    def put_port_range_list(
        self,
        region: str,
        port_range_list_id: str,
        entries_or_attributes: list[dict[str, Any]] | dict[str, Any] | None = None,
        account: str = DEFAULT_ACCOUNT,
    ) -> dict[str, Any]:
        """Create or wholly replace a port range list; returns ``{"PortRangeListId", "PortRangeListName", "Entries"}``.

        ``entries_or_attributes`` is the entries, ``[{"PortRange": "80/80", "Description": ...}]``,
        or ``{"Entries": [...], "PortRangeListName": ...}``; absent fields become "".
        """
        body = {"Entries": entries_or_attributes} if isinstance(entries_or_attributes, list) else entries_or_attributes
        result: dict[str, Any] = self._call(
            "PUT", f"port-range-lists/{region}/{port_range_list_id}", body or {}, account
        )
        return result

    def port_range_list(self, region: str, port_range_list_id: str, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"port-range-lists/{region}/{port_range_list_id}", account=account)
        return result

    def remove_port_range_list(self, region: str, port_range_list_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._call("DELETE", f"port-range-lists/{region}/{port_range_list_id}", account=account)

    def put_interface(
        self, region: str, eni_id: str, entry: dict[str, Any], account: str = DEFAULT_ACCOUNT
    ) -> dict[str, Any]:
        """Create or replace an ENI from DescribeNetworkInterfaces fields; absent ones take the API's empty values."""
        result: dict[str, Any] = self._call("PUT", f"interfaces/{region}/{eni_id}", entry, account)
        return result

    def interface(self, region: str, eni_id: str, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"interfaces/{region}/{eni_id}", account=account)
        return result

    def remove_interface(self, region: str, eni_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._call("DELETE", f"interfaces/{region}/{eni_id}", account=account)

    def join_group(self, region: str, eni_id: str, group_id: str, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        """Put the ENI in the group too (a primary ENI's instance follows); returns the ENI."""
        result: dict[str, Any] = self._call("PUT", f"interfaces/{region}/{eni_id}/groups/{group_id}", {}, account)
        return result

    def leave_group(self, region: str, eni_id: str, group_id: str, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "DELETE", f"interfaces/{region}/{eni_id}/groups/{group_id}", account=account
        )
        return result

    def associate_eip(
        self, region: str, eni_id: str, address: str, private_ip: str = "", account: str = DEFAULT_ACCOUNT
    ) -> dict[str, Any]:
        """Associate an EIP with the ENI, or with one of its private IPs; returns the ENI."""
        body = {"PublicIpAddress": address, "PrivateIpAddress": private_ip}
        result: dict[str, Any] = self._call("PUT", f"interfaces/{region}/{eni_id}/eip", body, account)
        return result

    def release_eip(self, region: str, eni_id: str, account: str = DEFAULT_ACCOUNT) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"interfaces/{region}/{eni_id}/eip", account=account)
        return result

    def put_instance(
        self, region: str, instance_id: str, entry: dict[str, Any], account: str = DEFAULT_ACCOUNT
    ) -> dict[str, Any]:
        """Create or replace an instance from DescribeInstances fields."""
        result: dict[str, Any] = self._call("PUT", f"instances/{region}/{instance_id}", entry, account)
        return result

    def remove_instance(self, region: str, instance_id: str, account: str = DEFAULT_ACCOUNT) -> None:
        self._call("DELETE", f"instances/{region}/{instance_id}", account=account)
