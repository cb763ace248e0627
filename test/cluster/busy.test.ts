// Issue 9, acceptance 4, in small: elections do not happen because a node is busy. A real 3-node
// cluster gets a 4,000-entry log through its API; then audits, stream subscribers (from=1 and from
// recent indices), history and list reads and a light write load run against every node; then a
// follower is stopped, ~3,000 entries are written, and it is restarted under the same load while it
// catches up. Asserted: no node's term changed in either phase (status at start and end, and every
// one-second /metrics sample of resonetics_term between), and the load really ran (every auditor
// completed an audit with ok, every subscriber received entries, the follower caught up).
// No timing is asserted; the figures are `npm run soak:busy`'s (scripts/soak-busy.ts, whose phases
// this test runs).
import { TestCluster } from "../support/cluster";
import { cleanupAll, withFailureContext } from "../support/server";
import { BusyOptions, SoakReport, formatReport, runBusySoak } from "../../scripts/soak-busy";

// Build ~10-20 s, two phases of >= 10 s (each until every auditor finished once), a 2,500-entry gap:
// well under two minutes on 2 idle cores; the bound leaves room for a loaded CI machine.
jest.setTimeout(240_000);

const OPTIONS: BusyOptions = {
  entries: 4_000, seconds: 10, audits: 2, subscribers: 40, behind: 2_500, readers: 4, writeRate: 20, buildClients: 64, untilFinished: true,
};

let cluster: TestCluster | undefined;
afterAll(async () => {
  await cluster?.stopAll();
  await cleanupAll();
});

test("no term changes under audits, streams, reads and writes, nor while a follower catches up 2,500 entries", async () => {
  const c = await TestCluster.start(3);
  cluster = c;
  const progress: string[] = [];
  let report: SoakReport | undefined;
  await withFailureContext(
    () => `cluster root ${c.root}\n${report === undefined ? `progress:\n${progress.join("\n")}` : formatReport(report, OPTIONS)}`,
    [c.root],
    async () => {
      const r = await runBusySoak(
        {
          nodes: c.ids.map((id) => ({ id, dir: c.dir(id), port: c.port(id) })),
          stopNode: (id) => c.stopNode(id),
          startNode: async (id) => {
            await c.startNode(id);
          },
        },
        OPTIONS,
        (line) => progress.push(line),
      );
      report = r;
      expect(r.phases.map((p) => p.name)).toEqual(["phase 1", "phase 2"]);
      for (const p of r.phases) {
        // No election: every node ends the phase in the term it started it in, with no change between.
        const terms = p.nodes.map((n) => ({ phase: p.name, id: n.id, termStart: n.termStart, termEnd: n.termEnd, termChanges: n.termChanges }));
        expect(terms).toEqual(terms.map((t) => ({ ...t, termEnd: t.termStart, termChanges: 0 })));
        // The load ran to the end: each auditor completed a verified audit, each subscriber got entries.
        expect({ phase: p.name, finished: p.finished, auditsPerAuditor: p.auditorDone.map((n) => n > 0) }).toEqual({
          phase: p.name, finished: true, auditsPerAuditor: OPTIONS.audits === 0 ? [] : Array.from({ length: OPTIONS.audits }, () => true),
        });
        expect({ phase: p.name, subscribersWithEntries: p.subscribersWithEntries }).toEqual({ phase: p.name, subscribersWithEntries: OPTIONS.subscribers });
        expect({ phase: p.name, failedAudits: p.nodes.reduce((s, n) => s + n.load.auditsFailed, 0) }).toEqual({ phase: p.name, failedAudits: 0 });
      }
      const p2 = r.phases[1];
      const catchUp = p2.catchUp;
      if (catchUp === undefined) throw new Error("phase 2 has no catch-up record");
      // Stopping the follower, writing past it and restarting it did not change any term either.
      const before = p2.nodes.map((n) => ({ id: n.id, term: catchUp.termsBeforeStop[n.id] }));
      expect(before).toEqual(p2.nodes.map((n) => ({ id: n.id, term: n.termEnd })));
      expect({ follower: catchUp.id, caughtUp: catchUp.ms !== null }).toEqual({ follower: catchUp.id, caughtUp: true });
    },
  );
});
