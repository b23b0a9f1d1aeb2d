// SPDX-License-Identifier: Apache-2.0
import Glibc

/// write(2) to a closed peer raises SIGPIPE, which would end the test process;
/// the daemon ignores it at start (ProcessControl), a test must do the same
/// before it writes to something that may be gone (a socket's peer, a killed
/// holder's pipe). The disposition is process-wide and tests run in parallel,
/// so it is set once and never restored.
public func ignoreSIGPIPE() { _ = signal(SIGPIPE, SIG_IGN) }
