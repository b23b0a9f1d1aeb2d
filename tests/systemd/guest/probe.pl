#!/usr/bin/perl
# SPDX-License-Identifier: Apache-2.0
# Test-only sandbox probe (tests/systemd/run.sh): runs as ExecStartPre= of the
# real balloond.service, so with exactly its capabilities and hardening, and
# says whether what balloond needs works there. perl-base is in every Debian.
use strict;
use warnings;
no warnings 'portable';

# PSI trigger: /proc/pressure/memory opened read-write, "some STALL WINDOW".
# A window under 2 s needs CAP_SYS_RESOURCE; 2 s works without it.
for my $t (["1s", "some 100000 1000000"], ["2s", "some 150000 2000000"]) {
    my ($name, $trigger) = @$t;
    if (open(my $fh, "+<", "/proc/pressure/memory")) {
        my $n = syswrite($fh, "$trigger\0");
        print defined $n ? "probe: psi-trigger-$name ok\n" : "probe: psi-trigger-$name failed: $!\n";
        close($fh);
    } else {
        print "probe: psi-trigger-$name failed: open: $!\n";
    }
}

# pagemap: the frame number of one of our own pages (needs CAP_SYS_ADMIN).
open(my $maps, "<", "/proc/self/maps") or die "maps: $!";
my ($start) = (<$maps> =~ /^([0-9a-f]+)-/);
close($maps);
if (open(my $pm, "<:raw", "/proc/self/pagemap")) {
    my $addr = hex($start);
    sysseek($pm, ($addr / 4096) * 8, 0);
    my $got = sysread($pm, my $entry, 8);
    if (defined $got && $got == 8) {
        my $v = unpack("Q<", $entry);
        my $present = ($v >> 63) & 1;
        my $pfn = $v & ((1 << 55) - 1);
        print $present && $pfn ? "probe: pagemap-pfn ok\n" : "probe: pagemap-pfn failed: present=$present pfn=0\n";
    } else {
        print "probe: pagemap-pfn failed: read: $!\n";
    }
} else {
    print "probe: pagemap-pfn failed: open: $!\n";
}

# mlock is measured on balloond itself (VmLck after an inflation).
for my $f ("/proc/meminfo", "/proc/vmstat") {
    print open(my $h, "<", $f) ? "probe: read-$f ok\n" : "probe: read-$f failed: $!\n";
}
exit 0;
