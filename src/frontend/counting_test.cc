#include "frontend/counting.h"

#include <gtest/gtest.h>

namespace kindling {

TEST(Counting, AccountLimitThrottlesWithReason) {
  Counting c(3);
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(c.Acquire("f"));
  auto err = c.Acquire("g");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->status, 429);
  EXPECT_EQ(err->type, "TooManyRequestsException");
  EXPECT_EQ(err->reason, "ConcurrentInvocationLimitExceeded");
  c.Release("f");
  EXPECT_FALSE(c.Acquire("g"));
}

TEST(Counting, ReservationIsFloorAndCeiling) {
  Counting c(110);
  ASSERT_FALSE(c.SetReserved("r", 5));
  EXPECT_EQ(c.unreserved_limit(), 105u);
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(c.Acquire("r"));
  auto err = c.Acquire("r");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->reason, "ReservedFunctionConcurrentInvocationLimitExceeded");
  // The unreserved pool is untouched by r's invocations: others still get all 105.
  for (int i = 0; i < 105; ++i) ASSERT_FALSE(c.Acquire("other")) << i;
  ASSERT_TRUE(c.Acquire("other").has_value());
  c.Release("r");
  EXPECT_FALSE(c.Acquire("r"));
}

TEST(Counting, ZeroDisablesAndMinimumUnreservedStays) {
  Counting c(1000);
  ASSERT_FALSE(c.SetReserved("off", 0));
  ASSERT_TRUE(c.Acquire("off").has_value());
  ASSERT_FALSE(c.SetReserved("big", 900));
  auto err = c.SetReserved("more", 1);  // would leave 99 unreserved
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->type, "InvalidParameterValueException");
  ASSERT_FALSE(c.SetReserved("big", 899));  // replacing a reservation counts it once
  ASSERT_FALSE(c.SetReserved("more", 1));
  c.ClearReserved("big");
  EXPECT_EQ(c.Reserved("big"), -1);
  EXPECT_EQ(c.unreserved_limit(), 999u);
}

TEST(Counting, ReservationChangedWhileInFlightBalances) {
  Counting c(200);
  ASSERT_FALSE(c.Acquire("f"));   // admitted from the unreserved pool
  ASSERT_FALSE(c.SetReserved("f", 1));
  ASSERT_FALSE(c.Acquire("f"));   // its reservation's one slot
  c.Release("f");
  c.Release("f");
  EXPECT_EQ(c.in_flight(), 0u);
  c.ClearReserved("f");
  for (int i = 0; i < 200; ++i) ASSERT_FALSE(c.Acquire("g")) << i;
}

}  // namespace kindling
