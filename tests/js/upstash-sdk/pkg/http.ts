// The SDK's HttpClient, which the published package does not export by name: the class of
// the client a Redis instance builds for itself.
import { Redis } from "@upstash/redis";

const probe = new Redis({ url: "http://127.0.0.1:9", token: "unused", enableTelemetry: false });
// biome-ignore lint: the class is only reachable through an instance
export const HttpClient = (probe as any).client.constructor;
