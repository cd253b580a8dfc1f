import { defineConfig } from "vite";

export default defineConfig({
  resolve: {
    // The generated code in ../gen imports @bufbuild/protobuf: take this package's copy, so the
    // bundle holds one runtime and web/ builds without the root node_modules.
    dedupe: ["@bufbuild/protobuf"],
  },
  server: {
    // The dev server may read this package and the generated code beside it (paths from web/).
    fs: { allow: [".", "../gen"] },
  },
  build: {
    target: "es2022",
  },
});
