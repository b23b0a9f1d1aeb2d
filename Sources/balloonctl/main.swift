// SPDX-License-Identifier: Apache-2.0
// balloonctl: the host side of balloond. Thin: commands are in Commands.swift,
// everything that talks to the guest is in BalloonHost.
Balloonctl.runAndExit()
