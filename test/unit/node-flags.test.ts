import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SERVER_NODE_FLAGS } from "../../src/server/node-flags.js";

// The server's Node flags (src/server/node-flags.ts) must be what every documented way of starting it passes.
describe("server Node flags", () => {
  const scripts = (JSON.parse(readFileSync("package.json", "utf8")) as { scripts: Record<string, string> })
    .scripts;
  const dockerCmd = /^CMD (\[.*\])$/m.exec(readFileSync("Dockerfile", "utf8"))?.[1];

  it("are passed by npm start and npm run dev, before the entry point", () => {
    for (const name of ["start", "dev"]) {
      const args = (scripts[name] ?? "").split(" ");
      const node = args.indexOf("node");
      expect(node, name).toBeGreaterThanOrEqual(0);
      expect(args.slice(node + 1, node + 1 + SERVER_NODE_FLAGS.length), name).toEqual([...SERVER_NODE_FLAGS]);
      expect(args.at(-1), name).toBe("src/main.ts");
    }
  });

  it("are passed by the Dockerfile's CMD", () => {
    const cmd = JSON.parse(dockerCmd ?? "[]") as string[];
    expect(cmd.slice(0, 1 + SERVER_NODE_FLAGS.length)).toEqual(["node", ...SERVER_NODE_FLAGS]);
    expect(cmd.at(-1)).toBe("src/main.ts");
  });

  it("are flags Node accepts on its command line", () => {
    // Some are V8 flags that NODE_OPTIONS refuses (allowedNodeEnvironmentFlags lacks them); an
    // unknown one makes node exit with 9 ("bad option").
    const run = spawnSync(process.execPath, [...SERVER_NODE_FLAGS, "-e", "process.stdout.write('ok')"], {
      encoding: "utf8",
    });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toBe("ok");
  });
});
