// Destinations of asynchronous invocations: what an ARN in DestinationConfig or
// DeadLetterConfig.TargetArn names, and where Kindling delivers to it.
//
//   arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]  -> an asynchronous invoke of that function
//   arn:aws:sqs:REGION:ACCOUNT:NAME                            -> local queue NAME
//   arn:aws:sns:REGION:ACCOUNT:NAME                            -> local queue NAME
//   arn:aws:events:REGION:ACCOUNT:event-bus/NAME               -> local queue NAME
//
// A local queue is a durable message list in events.db that users read over HTTP
// (/kindling/queues/NAME, see docs/async.md): Kindling runs no SQS/SNS/EventBridge, and a record
// is never dropped because its target service is absent.
#pragma once

#include <string>

namespace kindling {

struct Destination {
  enum Kind { kInvalid, kLambda, kLocalQueue, kUnsupported };
  Kind kind = kInvalid;
  std::string service;    // "lambda", "sqs", "sns", "events", ...
  std::string region;
  std::string account;
  std::string function;   // kLambda: function name
  std::string qualifier;  // kLambda: version or alias, "" = unqualified
  std::string queue;      // kLocalQueue: the local queue's name
};

// Parses an ARN. kInvalid: not a destination Lambda accepts; kUnsupported: one Lambda accepts
// but Kindling cannot deliver to (S3 buckets).
Destination ParseDestination(const std::string& arn);

// True if `name` is a valid local queue name (SQS rules: 1-80 of [A-Za-z0-9_-], optional ".fifo").
bool ValidQueueName(const std::string& name);

}  // namespace kindling
