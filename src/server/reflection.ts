/**
 * gRPC server reflection, v1 and v1alpha, so `buf curl`, grpcurl and IDEs can call the server
 * without a local copy of the schema. No npm package does this for connect-es; this is the protocol
 * (grpc/grpc doc/server-reflection.md) on top of reflection-index.ts.
 */
import { create, type DescFile, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createReflectionIndex, type ReflectionIndex } from "./reflection-index.js";

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;
type Answer = Response["messageResponse"];

/**
 * Registers grpc.reflection.v1 and v1alpha ServerReflection. `services` are the other services the
 * router serves (app services, health); the reflection services add themselves.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const index = createReflectionIndex([...services, v1.ServerReflection, v1alpha.ServerReflection]);
  router.service(v1.ServerReflection, {
    serverReflectionInfo: (requests) => reflectionStream(index, requests),
  });
  // v1alpha is wire-identical to v1: translate through bytes rather than keep two copies of the logic.
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const res of reflectionStream(index, mapAsync(requests, toV1Request))) {
        yield toV1alphaResponse(res);
      }
    },
  });
}

/** One reflection stream: one response per request; each file's dependencies are sent once per stream. */
async function* reflectionStream(index: ReflectionIndex, requests: AsyncIterable<Request>) {
  const sent = new Set<string>();
  for await (const req of requests) {
    yield create(v1.ServerReflectionResponseSchema, {
      validHost: req.host,
      originalRequest: req,
      messageResponse: answer(index, req, sent),
    });
  }
}

function answer(index: ReflectionIndex, req: Request, sent: Set<string>): Answer {
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: create(v1.ListServiceResponseSchema, {
          service: index.serviceNames.map((name) => ({ name })),
        }),
      };
    case "fileByFilename":
      return files(index.fileByName(r.value), sent, `file ${r.value}`);
    case "fileContainingSymbol":
      return files(index.fileContainingSymbol(r.value), sent, `symbol ${r.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = r.value;
      const file = index.fileContainingExtension(containingType, extensionNumber);
      return files(file, sent, `extension ${extensionNumber} of ${containingType}`);
    }
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbers(r.value);
      if (numbers === undefined) return error(Code.NotFound, `type ${r.value} not found`);
      return {
        case: "allExtensionNumbersResponse",
        value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: r.value, extensionNumber: numbers }),
      };
    }
    default:
      return error(Code.InvalidArgument, "empty reflection request");
  }
}

/**
 * The requested file first (always, even if sent before: clients take it as the answer), then
 * those of its transitive imports not yet sent on this stream, as grpc-go does.
 */
function files(file: DescFile | undefined, sent: Set<string>, what: string): Answer {
  if (file === undefined) return error(Code.NotFound, `${what} not found`);
  const out: Uint8Array[] = [];
  const queue: DescFile[] = [file];
  for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
    if (out.length > 0 && sent.has(f.proto.name)) continue;
    sent.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    queue.push(...f.dependencies.filter((d) => !sent.has(d.proto.name)));
  }
  return {
    case: "fileDescriptorResponse",
    value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: out }),
  };
}

function error(code: Code, message: string): Answer {
  return {
    case: "errorResponse",
    value: create(v1.ErrorResponseSchema, { errorCode: code, errorMessage: message }),
  };
}

function toV1Request(r: v1alpha.ServerReflectionRequest): Request {
  return fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, r));
}

function toV1alphaResponse(r: Response): v1alpha.ServerReflectionResponse {
  return fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, r));
}

async function* mapAsync<T, U>(source: AsyncIterable<T>, fn: (t: T) => U): AsyncIterable<U> {
  for await (const item of source) yield fn(item);
}
