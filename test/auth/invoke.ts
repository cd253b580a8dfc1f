import { create, type DescMethod } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";

/** Calls any method with an empty request and the given headers; resolves when it ends. */
export async function invoke(
  transport: Transport,
  method: DescMethod,
  headers: Record<string, string>,
): Promise<void> {
  const c = createClient(method.parent, transport) as unknown as Record<
    string,
    (req: unknown, opts: { headers: Record<string, string> }) => unknown
  >;
  const call = c[method.localName];
  if (!call) throw new Error(`no client method ${method.localName}`);
  const res = call(create(method.input), { headers });
  if (method.methodKind === "server_streaming") {
    for await (const _ of res as AsyncIterable<unknown>) break;
  } else await res;
}
