#include <weft/weft.hpp>
#include <cstdio>
int main() {
  int r = weft::run([] {
    auto h = weft::go([](int x) { return x * 2; }, 21);
    weft::Mutex m; weft::WaitGroup wg; long sum = 0;
    for (int i = 0; i < 1000; i++) { wg.add(); weft::go([&, i] { weft::this_fiber::yield(); std::lock_guard g(m); sum += i; wg.done(); }); }
    wg.wait();
    weft::this_fiber::sleep_for(std::chrono::milliseconds(10));
    std::printf("sum=%ld id=%llu\n", sum, (unsigned long long)weft::this_fiber::id());
    return h.join();
  }, {.workers = 2});
  std::printf("r=%d\n", r);
}
