/**
 * What gRPC server reflection can answer: the served services, every file they need (transitively,
 * well-known types included) by file name, and symbol and extension look-ups, on a protobuf-es
 * registry built from those files.
 */
import {
  createRegistry,
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  type Registry,
} from "@bufbuild/protobuf";

/** Look-ups over the files of the served services. */
export interface ReflectionIndex {
  /** Fully-qualified names of the served services, sorted. */
  readonly serviceNames: readonly string[];
  /** A file by its proto path, such as `shop/inventory/v1/inventory.proto`. */
  fileByName(name: string): DescFile | undefined;
  /** The file declaring a service, method, message, field, oneof, enum, enum value or extension. */
  fileContainingSymbol(symbol: string): DescFile | undefined;
  /** The file declaring extension `number` of message `typeName`. */
  fileContainingExtension(typeName: string, number: number): DescFile | undefined;
  /** The extension numbers of a message, or undefined when the message is unknown. */
  extensionNumbers(typeName: string): number[] | undefined;
}

/** Builds the index for `services` and all files they depend on. */
export function createReflectionIndex(services: readonly DescService[]): ReflectionIndex {
  const files = collectFiles(services.map((s) => s.file));
  // DescFile.name lacks ".proto"; reflection clients ask by the path used in `import` statements.
  const byName = new Map(files.map((f) => [f.proto.name, f]));
  const registry = createRegistry(...files);
  return {
    serviceNames: [...new Set(services.map((s) => s.typeName))].sort(),
    fileByName: (name) => byName.get(name),
    fileContainingSymbol: (symbol) => findSymbol(registry, symbol),
    fileContainingExtension(typeName, number) {
      const extendee = registry.getMessage(typeName);
      return extendee === undefined ? undefined : registry.getExtensionFor(extendee, number)?.file;
    },
    extensionNumbers(typeName) {
      if (registry.getMessage(typeName) === undefined) return undefined;
      return extensionsOf(registry, typeName).map((e) => e.number);
    },
  };
}

/** Every file reachable from `roots` through imports, each once. */
function collectFiles(roots: readonly DescFile[]): DescFile[] {
  const seen = new Map<string, DescFile>();
  const stack = [...roots];
  for (let file = stack.pop(); file !== undefined; file = stack.pop()) {
    if (seen.has(file.proto.name)) continue;
    seen.set(file.proto.name, file);
    stack.push(...file.dependencies);
  }
  return [...seen.values()];
}

/**
 * Types are in the registry by name. Members (methods, fields, oneofs, enum values) are not, so a
 * miss is retried on the name without its last segment and the member checked to exist there:
 * `pkg.Svc.Method` resolves, `pkg.Svc.Nonexistent` does not.
 */
function findSymbol(registry: Registry, symbol: string): DescFile | undefined {
  const direct = registry.get(symbol);
  if (direct !== undefined) return direct.file;
  const dot = symbol.lastIndexOf(".");
  if (dot <= 0) return undefined;
  const parent = registry.get(symbol.slice(0, dot));
  const member = symbol.slice(dot + 1);
  return parent !== undefined && hasMember(parent, member) ? parent.file : undefined;
}

function hasMember(parent: DescMessage | DescEnum | DescService | DescExtension, member: string): boolean {
  switch (parent.kind) {
    case "service":
      return parent.methods.some((m) => m.name === member);
    case "enum":
      return parent.values.some((v) => v.name === member);
    case "message":
      // Enum values are scoped as siblings of their enum, so a nested enum's values are members here.
      return (
        parent.fields.some((f) => f.name === member) ||
        parent.oneofs.some((o) => o.name === member) ||
        parent.nestedEnums.some((e) => e.values.some((v) => v.name === member))
      );
    default:
      return false;
  }
}

function extensionsOf(registry: Registry, typeName: string): DescExtension[] {
  const out: DescExtension[] = [];
  for (const desc of registry) {
    if (desc.kind === "extension" && desc.extendee.typeName === typeName) out.push(desc);
  }
  return out;
}
