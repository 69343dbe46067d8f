// go(fill, v) with fill(std::vector<int>&): the copy of v cannot bind to a T&.
// expect: pass std::ref\(x\)
#include <weft/weft.hpp>
#include <vector>
void fill(std::vector<int>& v) { v.push_back(1); }
void f() {
  std::vector<int> v;
  weft::go(fill, v).join();
}
