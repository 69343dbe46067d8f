// Scope::go with arguments f does not take.
// expect: f cannot be called with these arguments
#include <weft/weft.hpp>
void f() {
  weft::Scope s;
  s.go([](int) {}, "not an int");
}
