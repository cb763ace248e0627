/**
 * Interpreter for the data-driven trace files in test/raft/testdata/*.txt. One command per line;
 * `#` starts a comment. Every command handles the touched node's Ready like a real runtime would
 * (persist to its MemoryStorage, queue messages, apply). Messages move only on deliver/stabilize.
 *
 *   cluster n1 n2 n3 [learners=n4] [prevote=off] [checkquorum=off] [figure8=unsafe] [batch=1]
 *   campaign n1            start an election now            tick n1 [k]   tick one node k times
 *   tick-all [k]           tick every live node k times     propose n1 text
 *   deliver [a>b ...]      deliver what is queued (optionally only on those links), once
 *   stabilize [k]          deliver until nothing is queued (at most k rounds, default 100)
 *   drop [a>b ...]         discard queued messages (optionally only on those links)
 *   partition a b | c d    cut every link between the two groups      heal    restore all links
 *   isolate n1             cut n1 from everyone
 *   crash n1 / restart n1  lose volatile state / start again from what was persisted
 *   config n1 voters=a,b learners=c      propose a membership change on n1
 *   transfer n1 n2         leadership transfer                read n1 ctx   ReadIndex request
 *   snapshot n1            snapshot at the applied index and compact the log
 *   expect role n1 leader|follower|candidate|pre-candidate       expect term n1 3
 *   expect lead n1 n2|none      expect commit n1 5      expect applied n1 5
 *   expect log n1 1/1 2/2 ...   (index/term of every entry from the first retained one)
 *   expect first n1 5           expect voters n1 n1,n2   expect read n1 ctx index
 *   expect leaders 1            number of live leaders (in their own view)
 *   expect propose-fails n1 reason     expect queued a>b Type      expect term-above n1 2
 *   expect config-fails n1 voters=a,b learners=c reason=config_invalid
 *   run k                  k rounds of: every live node ticks once, then stabilize
 *   add-node n4            a fresh, empty node (not yet a member)
 */
import { EntryKind, genesisHash } from "../../src/ledger/entry";
import { utf8 } from "../../src/ledger/bytes";
import { configOfIds, voterIds } from "../../src/raft/config";
import { MemoryStorage } from "../../src/raft/storage";
import { Prng } from "../../src/raft/prng";
import { RawNode } from "../../src/raft/rawnode";
import { newRaft, type RaftFactory } from "../../src/raft/raft";
import { CommitAnyTermRaft } from "../../src/raft/sim/mutants";
import type { Message, NodeId, ReadState } from "../../src/raft/types";

interface TNode {
  id: NodeId;
  disk: MemoryStorage;
  raw: RawNode | null;
  applied: number;
  reads: ReadState[];
}

export class TraceError extends Error {}

export class TraceRunner {
  private nodes = new Map<NodeId, TNode>();
  private queue: Message[] = [];
  private blocked = new Set<string>();
  private opts = { preVote: true, checkQuorum: true, maxMsgBytes: 1 << 20, makeRaft: newRaft as RaftFactory };
  private rng = new Prng(7);

  run(text: string): void {
    const lines = text.split("\n");
    for (let n = 0; n < lines.length; n++) {
      const line = lines[n].replace(/#.*/, "").trim();
      if (line === "") continue;
      try {
        this.exec(line.split(/\s+/));
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        throw new TraceError(`line ${n + 1}: ${line}\n  ${msg}\n  state: ${this.describe()}`);
      }
    }
  }

  describe(): string {
    return [...this.nodes.values()]
      .map((n) => {
        if (n.raw === null) return `${n.id}:down`;
        const s = n.raw.status();
        return `${n.id}:${s.role}/t${s.term}/c${s.commit}/last${s.lastIndex}/lead=${s.lead ?? "-"}`;
      })
      .join(" ");
  }

  private node(id: string): TNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }
  private live(id: string): RawNode {
    const n = this.node(id);
    if (n.raw === null) throw new Error(`${id} is down`);
    return n.raw;
  }

  private start(n: TNode): void {
    n.raw = new RawNode({
      id: n.id,
      storage: n.disk,
      applied: n.disk.anchor().index,
      electionTick: 10,
      heartbeatTick: 1,
      preVote: this.opts.preVote,
      checkQuorum: this.opts.checkQuorum,
      maxMsgBytes: this.opts.maxMsgBytes,
      maxInflight: 8,
      rng: this.rng.fork(),
    }, this.opts.makeRaft);
    n.applied = n.disk.anchor().index;
    this.process(n);
  }

  /** The runtime's loop body: persist, then queue messages, then apply, then advance. */
  private process(n: TNode): void {
    const raw = n.raw;
    if (raw === null) return;
    for (let guard = 0; raw.hasReady(); guard++) {
      if (guard > 100) throw new Error(`${n.id}: Ready did not settle`);
      const rd = raw.ready();
      if (rd.reports.length > 0) throw new Error(`${n.id}: verification report ${JSON.stringify(rd.reports[0])}`);
      if (rd.snapshot !== null) {
        n.disk.applySnapshot(rd.snapshot);
        n.applied = rd.snapshot.meta.index;
      }
      n.disk.append(rd.entries);
      if (rd.hardState !== null) n.disk.setHardState(rd.hardState);
      this.queue.push(...rd.messages);
      for (const e of rd.committedEntries) {
        if (e.index !== n.applied + 1) throw new Error(`${n.id}: applied ${e.index} after ${n.applied}`);
        n.applied = e.index;
      }
      n.reads.push(...rd.readStates);
      raw.advance(rd);
    }
  }

  private linkOk(m: Message): boolean {
    return !this.blocked.has(`${m.from}>${m.to}`);
  }

  private deliverOnce(links: string[]): number {
    const take = this.queue.filter((m) => links.length === 0 || links.includes(`${m.from}>${m.to}`));
    this.queue = this.queue.filter((m) => !take.includes(m));
    let n = 0;
    for (const m of take) {
      const to = this.nodes.get(m.to);
      if (to === undefined || to.raw === null || !this.linkOk(m)) continue;
      to.raw.step(m);
      this.process(to);
      n++;
    }
    return n;
  }

  private exec(a: string[]): void {
    const [cmd, ...args] = a;
    switch (cmd) {
      case "cluster": {
        const ids = args.filter((x) => !x.includes("="));
        const kv = new Map(args.filter((x) => x.includes("=")).map((x) => x.split("=") as [string, string]));
        const learners = kv.get("learners")?.split(",") ?? [];
        this.opts.preVote = kv.get("prevote") !== "off";
        this.opts.checkQuorum = kv.get("checkquorum") !== "off";
        const cfg = configOfIds(ids, learners);
        this.nodes.clear();
        this.queue = [];
        this.blocked.clear();
        this.opts.makeRaft = newRaft;
        this.opts.maxMsgBytes = 1 << 20;
        // The planted Figure 8 bug (src/raft/sim/mutants.ts): commit any majority-replicated entry.
        if (kv.get("figure8") === "unsafe") this.opts.makeRaft = (cfg) => new CommitAnyTermRaft(cfg);
        if (kv.has("batch")) this.opts.maxMsgBytes = Number(kv.get("batch"));
        for (const id of [...ids, ...learners]) {
          const n: TNode = { id, disk: MemoryStorage.bootstrap("trace", cfg), raw: null, applied: 0, reads: [] };
          this.nodes.set(id, n);
          this.start(n);
        }
        return;
      }
      case "add-node": {
        // A fresh node with an empty log and no configuration: it joins via replication or snapshot.
        const id = args[0];
        const n: TNode = { id, disk: new MemoryStorage(genesisHash("trace")), raw: null, applied: 0, reads: [] };
        this.nodes.set(id, n);
        this.start(n);
        return;
      }
      case "run": {
        // k rounds of: every live node ticks once, then the network settles.
        const k = Number(args[0] ?? 1);
        for (let i = 0; i < k; i++) {
          for (const n of this.nodes.values()) {
            if (n.raw === null) continue;
            n.raw.tick();
            this.process(n);
          }
          for (let j = 0; j < 100 && this.queue.length > 0; j++) this.deliverOnce([]);
        }
        return;
      }
      case "campaign":
        this.live(args[0]).campaign();
        this.process(this.node(args[0]));
        return;
      case "tick": {
        const k = Number(args[1] ?? 1);
        for (let i = 0; i < k; i++) {
          this.live(args[0]).tick();
          this.process(this.node(args[0]));
        }
        return;
      }
      case "tick-all": {
        const k = Number(args[0] ?? 1);
        for (let i = 0; i < k; i++)
          for (const n of this.nodes.values()) {
            if (n.raw === null) continue;
            n.raw.tick();
            this.process(n);
          }
        return;
      }
      case "propose": {
        const r = this.live(args[0]).propose(EntryKind.Record, utf8(args.slice(1).join(" ")));
        if (!r.ok) throw new Error(`propose refused: ${r.reason}`);
        this.process(this.node(args[0]));
        return;
      }
      case "deliver":
        this.deliverOnce(args);
        return;
      case "stabilize": {
        const k = Number(args[0] ?? 100);
        for (let i = 0; i < k && this.queue.length > 0; i++) this.deliverOnce([]);
        return;
      }
      case "drop":
        this.queue = args.length === 0 ? [] : this.queue.filter((m) => !args.includes(`${m.from}>${m.to}`));
        return;
      case "partition": {
        const bar = args.indexOf("|");
        const left = args.slice(0, bar);
        const right = args.slice(bar + 1);
        for (const x of left) for (const y of right) this.blocked.add(`${x}>${y}`).add(`${y}>${x}`);
        return;
      }
      case "isolate":
        for (const y of this.nodes.keys()) if (y !== args[0]) this.blocked.add(`${args[0]}>${y}`).add(`${y}>${args[0]}`);
        return;
      case "heal":
        this.blocked.clear();
        return;
      case "crash": {
        const n = this.node(args[0]);
        n.raw = null;
        n.reads = [];
        return;
      }
      case "restart":
        this.start(this.node(args[0]));
        return;
      case "config": {
        const kv = new Map(args.slice(1).map((x) => x.split("=") as [string, string]));
        const voters = (kv.get("voters") ?? "").split(",").filter((x) => x !== "");
        const learners = (kv.get("learners") ?? "").split(",").filter((x) => x !== "");
        const r = this.live(args[0]).proposeConfig(configOfIds(voters, learners));
        if (!r.ok) throw new Error(`config refused: ${r.reason}`);
        this.process(this.node(args[0]));
        return;
      }
      case "transfer": {
        const r = this.live(args[0]).transferLeader(args[1]);
        if (!r.ok) throw new Error(`transfer refused: ${r.reason}`);
        this.process(this.node(args[0]));
        return;
      }
      case "read": {
        const r = this.live(args[0]).readIndex(Number(args[1]));
        if (!r.ok) throw new Error(`read refused: ${r.reason}`);
        this.process(this.node(args[0]));
        return;
      }
      case "snapshot": {
        const n = this.node(args[0]);
        const raw = this.live(args[0]);
        const meta = raw.snapshotMeta(n.applied);
        n.disk.createSnapshot({ meta, data: utf8(`state@${n.applied}`) });
        return;
      }
      case "expect":
        this.expect(args);
        return;
      default:
        throw new Error(`unknown command ${cmd}`);
    }
  }

  private expect(a: string[]): void {
    const [what, id, ...rest] = a;
    const eq = (got: string, want: string): void => {
      if (got !== want) throw new Error(`expect ${what} ${id}: got ${got}, want ${want}`);
    };
    switch (what) {
      case "role":
        return eq(this.live(id).status().role, rest[0]);
      case "term":
        return eq(String(this.live(id).status().term), rest[0]);
      case "term-above": {
        const t = this.live(id).status().term;
        if (!(t > Number(rest[0]))) throw new Error(`expect term-above ${id}: term ${t} is not above ${rest[0]}`);
        return;
      }
      case "config-fails": {
        const kv = new Map(rest.map((x) => x.split("=") as [string, string]));
        const voters = (kv.get("voters") ?? "").split(",").filter((x) => x !== "");
        const learners = (kv.get("learners") ?? "").split(",").filter((x) => x !== "");
        const r = this.live(id).proposeConfig(configOfIds(voters, learners));
        this.process(this.node(id));
        return eq(r.ok ? "ok" : r.reason, kv.get("reason") ?? "?");
      }
      case "lead":
        return eq(this.live(id).status().lead ?? "none", rest[0]);
      case "commit":
        return eq(String(this.live(id).status().commit), rest[0]);
      case "applied":
        return eq(String(this.node(id).applied), rest[0]);
      case "first":
        return eq(String(this.live(id).status().firstIndex), rest[0]);
      case "voters":
        return eq(voterIds(this.live(id).status().config).join(","), rest[0]);
      case "log": {
        const raw = this.live(id);
        const log = raw.raft.log;
        const got: string[] = [];
        for (let i = log.firstIndex(); i <= log.lastIndex(); i++) got.push(`${i}/${log.term(i) ?? "?"}`);
        return eq(got.join(" "), rest.join(" "));
      }
      case "read": {
        const n = this.node(id);
        const r = n.reads.find((x) => x.ctx === Number(rest[0]));
        return eq(r === undefined ? "none" : String(r.index), rest[1]);
      }
      case "leaders": {
        let k = 0;
        for (const n of this.nodes.values()) if (n.raw !== null && n.raw.status().role === "leader") k++;
        if (String(k) !== id) throw new Error(`expect leaders: got ${k}, want ${id}`);
        return;
      }
      case "propose-fails": {
        const r = this.live(id).propose(EntryKind.Record, utf8("x"));
        this.process(this.node(id));
        return eq(r.ok ? "ok" : r.reason, rest[0]);
      }
      case "queued": {
        const [link, type] = [id, rest[0]];
        const has = this.queue.some((m) => `${m.from}>${m.to}` === link && m.type === type);
        if (!has) throw new Error(`expect queued: no ${type} on ${link}; queued: ${this.queue.map((m) => `${m.from}>${m.to}:${m.type}`).join(" ")}`);
        return;
      }
      default:
        throw new Error(`unknown expectation ${what}`);
    }
  }
}
