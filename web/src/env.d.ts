interface ImportMetaEnv {
  /** The API's base URL, e.g. http://127.0.0.1:8080; unset means the page's own origin. */
  readonly VITE_API_URL?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
