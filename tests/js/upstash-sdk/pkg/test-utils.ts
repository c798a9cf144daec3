// What the tests need from the SDK's test-utils: an HTTP client for the gateway under test,
// from the same environment variables.
import { HttpClient } from "./http";

export const newHttpClient = () => {
  const url = process.env.UPSTASH_REDIS_REST_URL;
  if (!url) {
    throw new Error("Could not find url");
  }
  const token = process.env.UPSTASH_REDIS_REST_TOKEN;
  if (!token) {
    throw new Error("Could not find token");
  }
  return new HttpClient({ baseUrl: url, headers: { authorization: `Bearer ${token}` } });
};
