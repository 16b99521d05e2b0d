import type { Server } from "node:tls";
export function httpsFront(options: { key: string; cert: string; host: string; httpsPort: number; port: number }): Promise<Server>;
export function parseHostsFile(text: string): Map<string, { address: string; port: number | null }>;
export function hostsOverride(file: string): Promise<(request: Request) => Promise<Response>>;
