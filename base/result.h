#pragma once
// Result<T, E>: a value or an error, for operating errors on hot paths (no exceptions, no
// allocation). A minimal stand-in for std::expected (C++23); the member names match it so the
// switch-over is a rename. E is a small trivially copyable error value.
// Thread-safety: a value type; no shared state.

#include <type_traits>
#include <utility>

#include "base/assert.h"

namespace authswitch::base {

template <typename E>
struct Unexpected {
  E error;
};

template <typename E>
[[nodiscard]] constexpr Unexpected<E> unexpected(E e) noexcept {
  return Unexpected<E>{e};
}

template <typename T, typename E>
class [[nodiscard]] Result {
  static_assert(std::is_trivially_copyable_v<E>, "errors must be cheap values");
  static_assert(std::is_trivially_destructible_v<T>, "keep results cheap: views and numbers");

 public:
  constexpr Result(T value) noexcept : has_value_(true), value_(std::move(value)) {}  // NOLINT
  constexpr Result(Unexpected<E> u) noexcept : has_value_(false), error_(u.error) {}  // NOLINT

  [[nodiscard]] constexpr bool has_value() const noexcept { return has_value_; }
  constexpr explicit operator bool() const noexcept { return has_value_; }

  [[nodiscard]] constexpr const T& value() const& noexcept {
    AS_ASSERT(has_value_);
    return value_;
  }
  [[nodiscard]] constexpr T& value() & noexcept {
    AS_ASSERT(has_value_);
    return value_;
  }
  [[nodiscard]] constexpr const T& operator*() const& noexcept { return value(); }
  [[nodiscard]] constexpr const T* operator->() const noexcept { return &value(); }
  [[nodiscard]] constexpr const E& error() const noexcept {
    AS_ASSERT(!has_value_);
    return error_;
  }

 private:
  bool has_value_;
  union {
    T value_;
    E error_;
  };
};

// Result<void, E>: success or an error.
template <typename E>
class [[nodiscard]] Result<void, E> {
 public:
  constexpr Result() noexcept : has_value_(true), error_{} {}
  constexpr Result(Unexpected<E> u) noexcept : has_value_(false), error_(u.error) {}  // NOLINT

  [[nodiscard]] constexpr bool has_value() const noexcept { return has_value_; }
  constexpr explicit operator bool() const noexcept { return has_value_; }
  [[nodiscard]] constexpr const E& error() const noexcept {
    AS_ASSERT(!has_value_);
    return error_;
  }

 private:
  bool has_value_;
  E error_;
};

}  // namespace authswitch::base
