// SPDX-License-Identifier: Apache-2.0
// libFuzzer's driver entry (compiler-rt FuzzerInterface.h), for fuzz targets
// whose `main` SwiftPM renames: they call it themselves (Fuzz/*/main.swift).
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
