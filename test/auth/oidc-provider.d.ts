// oidc-provider 8 ships no type declarations; the tests use a small part of it.
declare module 'oidc-provider' {
  type Any = any;
  const Provider: new (issuer: string, configuration: Record<string, Any>) => Any;
  export const errors: Record<string, new (...args: Any[]) => Error>;
  export default Provider;
}

declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  const MemoryAdapter: new (model: string) => any;
  export default MemoryAdapter;
}
