// SPDX-License-Identifier: Apache-2.0
// Only the header matters: LLVMFuzzerRunDriver comes from -sanitize=fuzzer's runtime.
#include "CFuzzDriver.h"
