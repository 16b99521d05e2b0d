// Test files reach Myelin over HTTPS: trust the stage's CA (made by global-setup.ts) in this worker too.
import { inject } from "vitest";
import { trustCA } from "../e2e/tls.js";

trustCA({ caPem: inject("caPem") });
