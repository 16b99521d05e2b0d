// One real server for the whole end-to-end suite; tests reach it through inject("baseUrl").
import type { TestProject } from "vitest/node";
import { startServer } from "./server.js";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    serverName: string;
  }
}

export default async function setup(project: TestProject) {
  const server = await startServer({ REGISTRATION_SHARED_SECRET: "e2e-shared-secret" });
  project.provide("baseUrl", server.baseUrl);
  project.provide("serverName", server.serverName);
  return () => server.stop();
}
