#!/usr/bin/env python3
"""The QMP tier: Debian's python3-qemu-qmp (QEMU's own QMP library) drives `vmmkit run --sim`
processes over their QMP sockets, as a management stack would.

A source and a destination (`--incoming defer`) are started; the client negotiates, queries the
PCI devices, creates an iommufd object and hot-adds a vfio-pci NIC through it on both, then
  1. starts a slow migration and cancels it: the source runs again;
  2. migrates to a third process that lacks the NIC: the migration fails, the source runs again,
     and that destination exits (migrate-incoming's exit-on-error);
  3. migrates to the destination, polling query-migrate and listening for events until
     `completed`: the destination runs, the source is stopped (postmigrate).
Descriptors are passed with SCM_RIGHTS (send_fd_scm) for getfd / closefd, device_add fd=NAME,
object-add iommufd fd=NAME and add-fd / query-fdsets / remove-fd, and the VM process is seen to
close each one (/proc/PID/fd). A device added without id is known by its QOM path.
A client that sends garbage is dropped while the others carry on. Every step checks QEMU's
result shapes; the first failed check stops the tier with a non-zero status.
"""

import asyncio
import os
import socket
import sys
import tempfile
import time

from qemu.qmp import EventListener, ExecuteError, QMPClient

VMMKIT = os.environ["VMMKIT_BIN"]
NIC = "0000:00:05.0"
EDU = "0000:00:03.0"
RAM = "64M"
EVENTS = ("MIGRATION", "MIGRATION_PASS", "STOP", "RESUME", "VFIO_MIGRATION", "DEVICE_DELETED", "SHUTDOWN")


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok - {what}", flush=True)


class Vm:
    """One `vmmkit run --sim --qmp` process and a QMP client on its socket."""

    def __init__(self, name, tmp, incoming=False):
        self.name = name
        self.tmp = tmp
        self.incoming = incoming
        self.sock = os.path.join(tmp, f"{name}.qmp")
        self.log = os.path.join(tmp, f"{name}.log")
        self.proc = None
        self.qmp = QMPClient(name)
        self.events = EventListener(EVENTS)
        self.qmp.register_listener(self.events)
        self.seen = []

    async def start(self):
        args = ["node", VMMKIT, "run", "--sim", "-m", RAM, "-name", self.name,
                "--qmp", f"unix:{self.sock},server=on,wait=off"]
        if self.incoming:
            args += ["--incoming", "defer"]
        with open(self.log, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=asyncio.subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                await self.qmp.connect(self.sock)
                return
            except Exception:
                if self.proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not serve QMP: {self.output()}")
                await asyncio.sleep(0.1)

    def output(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def run(self, cmd, args=None):
        return await self.qmp.execute(cmd, args)

    async def error(self, cmd, args=None):
        try:
            result = await self.qmp.execute(cmd, args)
        except ExecuteError as e:
            return e.error_class, str(e)
        raise AssertionError(f"{self.name}: {cmd} succeeded: {result}")

    async def event(self, name, match=lambda data: True, timeout=60):
        """The first event called `name` whose data matches; it is consumed, the others stay in self.seen."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.seen):
                if e["event"] == name and match(e.get("data", {})):
                    del self.seen[i]
                    return e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {name} event; saw {self.seen}")
            try:
                self.seen.append(await asyncio.wait_for(self.events.get(), remaining))
            except asyncio.TimeoutError:
                pass

    async def hot_add_nic(self):
        await self.run("object-add", {"qom-type": "iommufd", "id": "iommufd0"})
        await self.run("device_add", {"driver": "vfio-pci", "id": "nic0", "host": NIC, "iommufd": "iommufd0",
                                      "x-device-dirty-page-tracking": True, "enable-migration": "on",
                                      "migration-events": True})

    async def hang_up(self):
        """Disconnect; a server that already hung up (after quit, or exiting) is what QEMU does too."""
        try:
            await self.qmp.disconnect()
        except EOFError:
            pass

    async def quit(self, expect_status=0):
        await self.run("quit")
        await self.hang_up()
        status = await asyncio.wait_for(self.proc.wait(), 30)
        check(status == expect_status, f"{self.name} exits with status {expect_status} after quit")

    async def stop(self):
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def status(vm):
    return await vm.run("query-status")


async def enable_events(vm):
    await vm.run("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})


async def negotiate_and_query(src, dst):
    version = await src.run("query-version")
    check(set(version) == {"qemu", "package"} and set(version["qemu"]) == {"major", "minor", "micro"},
          "query-version has QEMU's shape")
    names = {c["name"] for c in await src.run("query-commands")}
    check({"migrate", "migrate-incoming", "query-migrate", "migrate_cancel", "device_add", "device_del",
           "object-add", "getfd", "add-fd", "query-pci"} <= names, "query-commands lists the commands")
    check(await status(src) == {"running": True, "status": "running"}, "the source runs")
    check(await status(dst) == {"running": False, "status": "inmigrate"}, "the destination waits (inmigrate)")
    check(await src.run("query-pci") == [{"bus": 0, "devices": []}], "query-pci: no devices yet")
    cls, desc = await src.error("device_add", {"driver": "vfio-pci", "host": NIC, "iommufd": "nope"})
    check(cls == "GenericError" and "nope" in desc, f"device_add naming a missing iommufd object fails: {desc}")


async def hot_add(src, dst):
    for vm in (src, dst):
        await vm.hot_add_nic()
    devices = (await src.run("query-pci"))[0]["devices"]
    check(len(devices) == 1 and devices[0]["qdev_id"] == "nic0" and devices[0]["bus"] == 0,
          "query-pci shows the hot-added vfio-pci NIC")
    check(set(devices[0]["id"]) >= {"vendor", "device"} and "class" in devices[0]["class_info"],
          "its ids and class are QEMU-shaped")
    check(len(devices[0]["regions"]) > 0, "with its BARs")
    check(isinstance(devices[0]["irq_pin"], int), "irq_pin is there, as QEMU 11.1's PciDeviceInfo has it")


async def anonymous_device(vm):
    """A device added without id is known by its QOM path only, as in QEMU."""
    await vm.run("device_add", {"driver": "vfio-pci", "host": EDU})
    anonymous = [d for d in (await vm.run("query-pci"))[0]["devices"] if d["qdev_id"] == ""]
    check(len(anonymous) == 1, "query-pci lists a device added without id with an empty qdev_id")
    path = "/machine/peripheral-anon/device[0]"
    await vm.run("device_del", {"id": path})
    deleted = await vm.event("DEVICE_DELETED")
    check(deleted["data"] == {"path": path}, f"DEVICE_DELETED names it by path only: {deleted['data']}")


def held_by(vm, target):
    """How many of the VM process's fds link to `target` (what /proc/<pid>/fd/N names)."""
    fd_dir = f"/proc/{vm.proc.pid}/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            count += os.readlink(os.path.join(fd_dir, name)) == target
        except FileNotFoundError:
            pass
    return count


async def passed_fds(vm):
    """Descriptors passed with SCM_RIGHTS (the library's send_fd_scm, as libvirt passes them)."""
    read_end, write_end = os.pipe()
    target = os.readlink(f"/proc/self/fd/{write_end}")
    try:
        vm.qmp.send_fd_scm(write_end)
        await vm.run("getfd", {"fdname": "pipe0"})
        check(held_by(vm, target) == 1, "getfd: the VM holds the passed pipe")
        cls, desc = await vm.error("device_add", {"driver": "vfio-pci", "id": "nic1", "fd": "pipe0", "iommufd": "iommufd0"})
        check(cls == "GenericError" and target in desc and "not a VFIO device cdev" in desc
              and "'nic1'" in desc and "fd=pipe0" in desc and "VFIO_FD" not in desc,
              f"device_add fd=pipe0 checks the passed descriptor, naming the id and fd=: {desc}")
        cls, desc = await vm.error("object-add", {"qom-type": "iommufd", "id": "iommufd9", "fd": "pipe0"})
        check(cls == "GenericError" and "'iommufd9'" in desc and "fd=pipe0" in desc and "not /dev/iommu" in desc,
              f"object-add iommufd fd=pipe0 checks the passed descriptor is /dev/iommu: {desc}")
        check(held_by(vm, target) == 1, "refused, the descriptor stays named by the client")
        await vm.run("closefd", {"fdname": "pipe0"})
        check(held_by(vm, target) == 0, "closefd closes it in the VM")
        cls, desc = await vm.error("closefd", {"fdname": "pipe0"})
        check(cls == "GenericError" and "pipe0" in desc, "closefd of a closed name fails")

        vm.qmp.send_fd_scm(write_end)
        added = await vm.run("add-fd", {"opaque": "tier"})
        check(set(added) == {"fdset-id", "fd"} and held_by(vm, target) == 1, "add-fd puts it in an fd set")
        sets = await vm.run("query-fdsets")
        check(sets == [{"fdset-id": added["fdset-id"], "fds": [{"fd": added["fd"], "opaque": "tier"}]}],
              "query-fdsets lists it")
        await vm.run("remove-fd", {"fdset-id": added["fdset-id"], "fd": added["fd"]})
        check(held_by(vm, target) == 0 and await vm.run("query-fdsets") == [], "remove-fd closes it")

        vm.qmp.send_fd_scm(write_end)
        await vm.run("query-status")
        check(held_by(vm, target) == 0, "a descriptor sent with a command that does not take it is closed")
    finally:
        os.close(read_end)
        os.close(write_end)


async def garbage_client(vm):
    """A raw socket client that sends garbage is dropped; the VM's other client carries on."""
    reader, writer = await asyncio.open_unix_connection(vm.sock)
    greeting = await reader.readline()
    check(b'"QMP"' in greeting, "a raw client is greeted")
    writer.write(b'{"execute":"qmp_capabilities"}\r\nthis is not json\r\n')
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 10)
    check(b"GenericError" in rest, "the garbage gets a GenericError")
    writer.close()
    check(await status(vm) == {"running": True, "status": "running"}, "the VM and the other client carry on")


async def cancelled_migration(src, dst, tmp):
    path = os.path.join(tmp, "cancel.sock")
    await dst.run("migrate-incoming", {"uri": f"unix:{path}", "exit-on-error": False})
    # 64 MiB at 4 MiB/s: long enough to cancel while it is active.
    await src.run("migrate-set-parameters", {"max-bandwidth": 4 << 20})
    check((await src.run("query-migrate-parameters"))["max-bandwidth"] == 4 << 20, "max-bandwidth is set")
    await src.run("migrate", {"uri": f"unix:{path}"})
    await src.event("MIGRATION", lambda d: d["status"] == "active")
    info = await src.run("query-migrate")
    check(info["status"] == "active" and "expected-downtime" in info and info["ram"]["total"] == 64 << 20,
          "query-migrate while active: status, expected-downtime, ram.total")
    await src.run("migrate_cancel")
    await src.event("MIGRATION", lambda d: d["status"] == "cancelled")
    check((await src.run("query-migrate"))["status"] == "cancelled", "query-migrate says cancelled")
    check(await status(src) == {"running": True, "status": "running"}, "after the cancel the source runs")
    await dst.event("MIGRATION", lambda d: d["status"] == "failed")
    check(await status(dst) == {"running": False, "status": "inmigrate"}, "the destination still waits")


async def failed_migration(src, tmp):
    bare = Vm("bare", tmp, incoming=True)
    await bare.start()
    try:
        await enable_events(bare)
        path = os.path.join(tmp, "fail.sock")
        await bare.run("migrate-incoming", {"uri": f"unix:{path}"})
        await src.run("migrate-set-parameters", {"max-bandwidth": 0})
        await src.run("migrate", {"uri": f"unix:{path}"})
        await src.event("MIGRATION", lambda d: d["status"] == "failed")
        info = await src.run("query-migrate")
        check(info["status"] == "failed" and info.get("error-desc"), f"query-migrate: failed, {info.get('error-desc')}")
        check(await status(src) == {"running": True, "status": "running"}, "after the failure the source runs again")
        status_code = await asyncio.wait_for(bare.proc.wait(), 30)
        check(status_code == 1, "the destination without the NIC exits (exit-on-error)")
    finally:
        await bare.hang_up()
        await bare.stop()


async def completed_migration(src, dst, tmp):
    path = os.path.join(tmp, "mig.sock")
    await dst.run("migrate-incoming", {"channels": [
        {"channel-type": "main", "addr": {"transport": "socket", "type": "unix", "path": path}}]})
    await src.run("migrate-set-parameters", {"downtime-limit": 300, "max-bandwidth": 0})
    check(await dst.run("query-migrate") == {"status": "setup", "socket-address": [{"type": "unix", "path": path}]},
          "the destination's query-migrate is QEMU's: status and where it listens")
    await src.run("migrate", {"uri": f"unix:{path}"})
    polled = []
    while True:
        info = await src.run("query-migrate")
        polled.append(info["status"])
        if info["status"] in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(0.02)
    check(info["status"] == "completed", f"query-migrate polled until completed ({sorted(set(polled))})")
    ram = info["ram"]
    check(ram["total"] == 64 << 20 and ram["transferred"] > 0 and ram["remaining"] == 0 and ram["dirty-sync-count"] >= 1,
          f"ram: transferred {ram['transferred']}, total {ram['total']}, {ram['dirty-sync-count']} syncs")
    check("downtime" in info and info["vfio"]["transferred"] > 0, f"downtime {info['downtime']} ms, vfio {info['vfio']['transferred']} bytes")
    await src.event("MIGRATION", lambda d: d["status"] == "completed")
    await src.event("STOP")
    passes = [e for e in src.seen if e["event"] == "MIGRATION_PASS"]
    await dst.event("MIGRATION", lambda d: d["status"] == "completed")
    await dst.event("RESUME")
    check(await status(dst) == {"running": True, "status": "running"}, "the destination runs")
    check(await dst.run("query-migrate") == {"status": "completed"}, "the destination reports completed, no numbers (as QEMU)")
    check(await status(src) == {"running": False, "status": "postmigrate"}, "the source stopped (postmigrate)")
    print(f"# MIGRATION_PASS events after completion: {len(passes)}", flush=True)


async def main():
    with tempfile.TemporaryDirectory(prefix="vmmkit-qmp-tier-") as tmp:
        src, dst = Vm("source", tmp), Vm("destination", tmp, incoming=True)
        try:
            await src.start()
            await dst.start()
            for vm in (src, dst):
                await enable_events(vm)
            await negotiate_and_query(src, dst)
            await hot_add(src, dst)
            await anonymous_device(src)
            await passed_fds(src)
            await garbage_client(src)
            await cancelled_migration(src, dst, tmp)
            await failed_migration(src, tmp)
            await completed_migration(src, dst, tmp)
            await src.quit()
            await dst.quit()
        except BaseException:
            for vm in (src, dst):
                print(f"--- {vm.name} output ---\n{vm.output() if os.path.exists(vm.log) else ''}", file=sys.stderr)
            raise
        finally:
            await src.stop()
            await dst.stop()
    print("test:qmp: all checks passed", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
