// SPDX-License-Identifier: Apache-2.0
// libsystemd (libsystemd-dev): sd_notify and the watchdog from sd-daemon.h,
// sd_journal_sendv from sd-journal.h. Linked dynamically: Debian ships no
// libsystemd.a, so balloond links libsystemd.so.0 (with a static Swift runtime).
#pragma once
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
