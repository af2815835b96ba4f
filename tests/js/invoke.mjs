// Calls a kindlingd with the AWS SDK for JavaScript v3 (@aws-sdk/client-lambda), as a user would.
//   node invoke.mjs <endpoint> <access key id> <secret> <function name> <payload JSON>
// Environment AWS_* variables and shared config files are not consulted: the keys are explicit.
// Prints one JSON line: {"ok":true,"statusCode":..,"functionError":..,"payload":..,"functions":[..]}
// or {"ok":false,"name":<SDK error name>,"status":<HTTP status>,"message":..}; exits 0 either way
// (2 on a usage error).
import { InvokeCommand, LambdaClient, ListFunctionsCommand } from "@aws-sdk/client-lambda";

const [endpoint, accessKeyId, secretAccessKey, functionName, payload] = process.argv.slice(2);
if (!payload) {
  console.error("usage: node invoke.mjs ENDPOINT KEY SECRET FUNCTION PAYLOAD");
  process.exit(2);
}
const client = new LambdaClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId, secretAccessKey },
  maxAttempts: 1,
});

try {
  const listed = await client.send(new ListFunctionsCommand({}));
  const out = await client.send(new InvokeCommand({
    FunctionName: functionName,
    Payload: new TextEncoder().encode(payload),
  }));
  console.log(JSON.stringify({
    ok: true,
    statusCode: out.StatusCode,
    functionError: out.FunctionError ?? null,
    executedVersion: out.ExecutedVersion ?? null,
    payload: JSON.parse(new TextDecoder().decode(out.Payload)),
    functions: (listed.Functions ?? []).map((f) => f.FunctionName),
  }));
} catch (e) {
  console.log(JSON.stringify({
    ok: false,
    name: e.name,
    status: e.$metadata?.httpStatusCode ?? null,
    message: e.message,
  }));
}
