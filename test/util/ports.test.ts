// freePortRange (scripts/bench-lib.ts), which the cluster tests use for ports a node binds later:
// below the kernel's ephemeral range, where no outgoing connection can take a port between the
// check and the bind, and in a slice of its own for each jest worker.
import * as fs from "node:fs";
import { freePortRange } from "../../scripts/bench-lib";

const ephemeralFrom = (): number => Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);

describe("freePortRange", () => {
  test("picks consecutive free ports below the ephemeral range, in this jest worker's slice", async () => {
    const below = process.platform === "linux" ? ephemeralFrom() : 32_768;
    const worker = Number(process.env.JEST_WORKER_ID);
    expect(Number.isSafeInteger(worker) && worker >= 1).toBe(true);
    const width = Math.floor((below - 15_000) / 8);
    const from = 15_000 + ((worker - 1) % 8) * width;
    for (let round = 0; round < 20; round++) {
      const base = await freePortRange(3);
      expect({ round, base, inSlice: base >= from && base + 3 <= from + width, belowEphemeral: base + 2 < below }).toEqual({ round, base, inSlice: true, belowEphemeral: true });
    }
  });
});
