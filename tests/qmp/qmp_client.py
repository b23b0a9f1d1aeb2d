#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Drives balloon-hostd's QMP socket with QEMU's own Python client (qemu.qmp).

Run by Tests/SystemTests/QMPSystemTests.swift against a real balloon-hostd
and a real local balloond:

    qmp_client.py SOCKET BALLOON_MIB

Connects (the client checks the greeting and negotiates capabilities),
turns on stats polling on Proxmox's QOM path, reads query-balloon, sets a
balloon of BALLOON_MIB with `balloon` (a logical size, as QEMU takes it),
waits for BALLOON_CHANGE events until the logical size is reached, reads
query-balloon's Proxmox fields and qom-get guest-stats, and checks that an
unknown command is CommandNotFound. Prints a JSON summary on stdout; exits
non-zero with the reason on stderr when anything differs. Every wait has a
deadline and waits on a condition (an event, or a reply that says so).
"""
import asyncio
import json
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient

PATH = "machine/peripheral/balloon0"  # as Proxmox's qm writes it


def fail(reason):
    print(f"qmp_client: {reason}", file=sys.stderr)
    sys.exit(1)


async def until(what, check, timeout=20.0, step=0.1):
    """Polls an async condition until it returns a true value or the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            fail(f"timed out waiting for {what}")
        await asyncio.sleep(step)


async def main(socket, balloon_mib):
    qmp = QMPClient("balloond-test")
    await qmp.connect(socket)
    greeting = qmp.greeting
    summary = {"greeting": dict(greeting._raw)}

    version = await qmp.execute("query-version")
    if "qemu" not in version or "package" not in version:
        fail(f"query-version: {version}")
    commands = [c["name"] for c in await qmp.execute("query-commands")]
    summary["commands"] = commands

    await qmp.execute("qom-set", {"path": PATH, "property": "guest-stats-polling-interval", "value": 1})
    if await qmp.execute("qom-get", {"path": PATH, "property": "guest-stats-polling-interval"}) != 1:
        fail("the polling interval did not stick")

    # The guest's RAM is known once its first STATS arrived.
    async def info():
        try:
            return await qmp.execute("query-balloon")
        except ExecuteError as err:
            if err.error_class != "DeviceNotActive":
                raise
            return None

    before = await until("query-balloon to answer", info)
    ram = before["max_mem"]
    if before["actual"] != ram:
        fail(f"expected no balloon at the start: {before}")

    listener = EventListener(("BALLOON_CHANGE",))
    qmp.register_listener(listener)
    target = ram - balloon_mib * 1024 * 1024
    if await qmp.execute("balloon", {"value": target}) != {}:
        fail("balloon did not return {}")

    events = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not events or events[-1]["data"]["actual"] != target:
        remaining = deadline - loop.time()
        if remaining <= 0:
            fail(f"no BALLOON_CHANGE reached {target}: {events}")
        try:
            event = await asyncio.wait_for(listener.get(), remaining)
        except asyncio.TimeoutError:
            fail(f"no BALLOON_CHANGE reached {target}: {events}")
        events.append({"data": event["data"], "timestamp": event["timestamp"]})
    qmp.remove_listener(listener)
    summary["events"] = events

    # Proxmox's fields appear once a polled sample was taken.
    async def full_info():
        i = await qmp.execute("query-balloon")
        return i if "last_update" in i and i["actual"] == target else None

    after = await until("query-balloon with stats", full_info)
    summary["query-balloon"] = after
    for field in ("max_mem", "total_mem", "free_mem", "last_update"):
        if field not in after:
            fail(f"query-balloon lacks {field}: {after}")

    stats = await qmp.execute("qom-get", {"path": "/machine/peripheral/balloon0", "property": "guest-stats"})
    summary["guest-stats"] = stats
    if stats["last-update"] <= 0 or stats["stats"].get("stat-total-memory", 0) <= 0:
        fail(f"guest-stats: {stats}")

    try:
        await qmp.execute("stop")
        fail("stop was answered")
    except ExecuteError as err:
        summary["unknown"] = {"class": err.error_class, "desc": str(err)}
        if err.error_class != "CommandNotFound":
            fail(f"stop: {err.error_class} {err}")

    await qmp.disconnect()
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        fail("usage: qmp_client.py SOCKET BALLOON_MIB")
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
